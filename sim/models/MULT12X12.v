// Behavioural model of the Gowin GW5A MULT12X12, for simulation only (Verilator).
// Written for squeezehw from the primitive's documented behaviour (Gowin UG305 / Yosys's
// cells_xtra_gw5a.v port list); it covers the modes that squeezehw.hw.multiplier.RegisteredMultiplier
// uses and stops on any other:
//   DOUT = A * B (signed 12 x 12 -> 24 bits);
//   AREG_CLK / BREG_CLK / PREG_CLK / OREG_CLK = "CLK0" or "BYPASS", every register on "CE0",
//   RESET tied low (MULT_RESET_MODE is then irrelevant).
// Register order: A/B input registers -> multiplier -> PREG (pipeline) -> OREG (output).
module MULT12X12(DOUT, A, B, CLK, CE, RESET);
    parameter AREG_CLK = "BYPASS";
    parameter AREG_CE = "CE0";
    parameter AREG_RESET = "RESET0";
    parameter BREG_CLK = "BYPASS";
    parameter BREG_CE = "CE0";
    parameter BREG_RESET = "RESET0";
    parameter PREG_CLK = "BYPASS";
    parameter PREG_CE = "CE0";
    parameter PREG_RESET = "RESET0";
    parameter OREG_CLK = "BYPASS";
    parameter OREG_CE = "CE0";
    parameter OREG_RESET = "RESET0";
    parameter MULT_RESET_MODE = "SYNC";
    output [23:0] DOUT;
    input [11:0] A, B;
    input [1:0] CLK, CE, RESET;

    initial begin
        if ((AREG_CLK != "BYPASS" && AREG_CLK != "CLK0") || (BREG_CLK != "BYPASS" && BREG_CLK != "CLK0")
            || (PREG_CLK != "BYPASS" && PREG_CLK != "CLK0") || (OREG_CLK != "BYPASS" && OREG_CLK != "CLK0")
            || AREG_CE != "CE0" || BREG_CE != "CE0" || PREG_CE != "CE0" || OREG_CE != "CE0") begin
            $display("MULT12X12 model: unsupported mode (see sim/models/MULT12X12.v)");
            $finish;
        end
    end

    wire clk = CLK[0], ce = CE[0];
    reg [11:0] a_q, b_q;
    always @(posedge clk) if (ce) begin a_q <= A; b_q <= B; end
    wire signed [11:0] a_m = (AREG_CLK == "CLK0") ? a_q : A;
    wire signed [11:0] b_m = (BREG_CLK == "CLK0") ? b_q : B;
    wire signed [23:0] product = a_m * b_m;
    reg [23:0] p_q, o_q;
    always @(posedge clk) if (ce) p_q <= product;
    wire [23:0] p_m = (PREG_CLK == "CLK0") ? p_q : product;
    always @(posedge clk) if (ce) o_q <= p_m;
    assign DOUT = (OREG_CLK == "CLK0") ? o_q : p_m;
endmodule
