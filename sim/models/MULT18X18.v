// Behavioural model of the Gowin GW1N/GW2A MULT18X18, for simulation only (Verilator).
// Written for squeezehw from the primitive's documented behaviour (Gowin UG287 / Yosys's
// cells_xtra_gw2a.v port list); it covers the modes that squeezehw.hw.multiplier.RegisteredMultiplier
// uses and stops on any other:
//   DOUT = A * B (18 x 18 -> 36 bits, each operand signed when ASIGN / BSIGN is high);
//   AREG / BREG / OUT_REG / PIPE_REG = 0 or 1 on CLK with CE, ASIGN_REG = AREG, BSIGN_REG = BREG,
//   RESET tied low, ASEL = BSEL = 0 (A and B from the fabric, no shift chain).
module MULT18X18(A, SIA, B, SIB, ASIGN, BSIGN, ASEL, BSEL, CE, CLK, RESET, DOUT, SOA, SOB);
    input [17:0] A, SIA;
    input [17:0] B, SIB;
    input ASIGN, BSIGN;
    input ASEL, BSEL;
    input CE;
    input CLK;
    input RESET;
    output [35:0] DOUT;
    output [17:0] SOA, SOB;
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
            $display("MULT18X18 model: unsupported mode (see sim/models/MULT18X18.v)");
            $finish;
        end
    end

    reg [17:0] a_q, b_q;
    reg sa_q, sb_q;
    always @(posedge CLK) if (CE) begin
        a_q <= A; b_q <= B; sa_q <= ASIGN; sb_q <= BSIGN;
    end
    wire [17:0] a_m = AREG ? a_q : A;
    wire [17:0] b_m = BREG ? b_q : B;
    wire sa_m = AREG ? sa_q : ASIGN;
    wire sb_m = BREG ? sb_q : BSIGN;
    wire signed [36:0] a_x = {{19{sa_m & a_m[17]}}, a_m};
    wire signed [36:0] b_x = {{19{sb_m & b_m[17]}}, b_m};
    wire signed [36:0] product = a_x * b_x;
    reg [35:0] p_q, o_q;
    always @(posedge CLK) if (CE) p_q <= product[35:0];
    wire [35:0] p_m = PIPE_REG ? p_q : product[35:0];
    always @(posedge CLK) if (CE) o_q <= p_m;
    assign DOUT = OUT_REG ? o_q : p_m;
    assign SOA = a_m;
    assign SOB = b_m;
endmodule
