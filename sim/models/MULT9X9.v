// Behavioural model of the Gowin GW1N/GW2A MULT9X9, for simulation only (Verilator).
// Written for squeezehw from the primitive's documented behaviour (Gowin UG287 / Yosys's
// cells_xtra_gw2a.v port list); it covers the modes that squeezehw.hw.multiplier.RegisteredMultiplier
// uses and stops on any other:
//   DOUT = A * B (9 x 9 -> 18 bits, each operand signed when ASIGN / BSIGN is high);
//   AREG / BREG / OUT_REG / PIPE_REG = 0 or 1 on CLK with CE, ASIGN_REG = AREG, BSIGN_REG = BREG,
//   RESET tied low, ASEL = BSEL = 0 (A and B from the fabric, no shift chain).
module MULT9X9(A, SIA, B, SIB, ASIGN, BSIGN, ASEL, BSEL, CE, CLK, RESET, DOUT, SOA, SOB);
    input [8:0] A, SIA;
    input [8:0] B, SIB;
    input ASIGN, BSIGN;
    input ASEL, BSEL;
    input CE;
    input CLK;
    input RESET;
    output [17:0] DOUT;
    output [8:0] SOA, SOB;
    parameter AREG = 1'b0;
    parameter BREG = 1'b0;
    parameter OUT_REG = 1'b0;
    parameter PIPE_REG = 1'b0;
    parameter ASIGN_REG = 1'b0;
    parameter BSIGN_REG = 1'b0;
    parameter SOA_REG = 1'b0;
    parameter MULT_RESET_MODE = "SYNC";

    initial begin
        if (ASIGN_REG != AREG || BSIGN_REG != BREG || SOA_REG != 1'b0) begin
            $display("MULT9X9 model: unsupported mode (see sim/models/MULT9X9.v)");
            $finish;
        end
    end

    reg [8:0] a_q, b_q;
    reg sa_q, sb_q;
    always @(posedge CLK) if (CE) begin
        a_q <= A; b_q <= B; sa_q <= ASIGN; sb_q <= BSIGN;
    end
    wire [8:0] a_m = AREG ? a_q : A;
    wire [8:0] b_m = BREG ? b_q : B;
    wire sa_m = AREG ? sa_q : ASIGN;
    wire sb_m = BREG ? sb_q : BSIGN;
    wire signed [18:0] a_x = {{10{sa_m & a_m[8]}}, a_m};
    wire signed [18:0] b_x = {{10{sb_m & b_m[8]}}, b_m};
    wire signed [18:0] product = a_x * b_x;
    reg [17:0] p_q, o_q;
    always @(posedge CLK) if (CE) p_q <= product[17:0];
    wire [17:0] p_m = PIPE_REG ? p_q : product[17:0];
    always @(posedge CLK) if (CE) o_q <= p_m;
    assign DOUT = OUT_REG ? o_q : p_m;
    assign SOA = a_m;
    assign SOB = b_m;
endmodule
