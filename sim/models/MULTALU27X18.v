// Behavioural model of the Gowin GW5A MULTALU27X18, for simulation only (Verilator).
// Written for squeezehw from the primitive's documented behaviour (Gowin UG305 / Yosys's
// cells_xtra_gw5a.v port list); it covers only the plain-multiplier mode that
// squeezehw.hw.multiplier.RegisteredMultiplier uses and stops on any other:
//   DOUT = A * B (signed 27 x 18 -> 45 bits, sign-extended to 48);
//   P_SEL = 0 (no pre-adder), A_SEL = 0, CASI_SEL = 0, ACC_SEL = 0, ADD_SUB_0 = ADD_SUB_1 = 0, no
//   DYN_* selection; C_SEL = 1 is accepted only with C tied to zero (checked at run time);
//   AREG_CLK / BREG_CLK / PREG_CLK / OREG_CLK = "CLK0" or "BYPASS" on "CE0", RESET tied low.
module MULTALU27X18(DOUT, CASO, SOA, A, SIA, B, C, D, CASI, ACCSEL, PSEL, ASEL, PADDSUB, CSEL, CASISEL, ADDSUB, CLK, CE, RESET);
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
    parameter DYN_P_SEL = "FALSE";
    parameter P_SEL = 1'b0;
    parameter DYN_P_ADDSUB = "FALSE";
    parameter P_ADDSUB = 1'b0;
    parameter DYN_A_SEL = "FALSE";
    parameter A_SEL = 1'b0;
    parameter DYN_ADD_SUB_0 = "FALSE";
    parameter ADD_SUB_0 = 1'b0;
    parameter DYN_ADD_SUB_1 = "FALSE";
    parameter ADD_SUB_1 = 1'b0;
    parameter DYN_C_SEL = "FALSE";
    parameter C_SEL = 1'b1;
    parameter DYN_CASI_SEL = "FALSE";
    parameter CASI_SEL = 1'b0;
    parameter DYN_ACC_SEL = "FALSE";
    parameter ACC_SEL = 1'b0;
    parameter MULT12X12_EN = "FALSE";
    output [47:0] DOUT, CASO;
    output [26:0] SOA;
    input [26:0] A, SIA;
    input [17:0] B;
    input [47:0] C;
    input [25:0] D;
    input [47:0] CASI;
    input ACCSEL, PSEL, ASEL, PADDSUB, CSEL, CASISEL;
    input [1:0] ADDSUB;
    input [1:0] CLK, CE, RESET;

    initial begin
        if (P_SEL != 1'b0 || A_SEL != 1'b0 || CASI_SEL != 1'b0 || ACC_SEL != 1'b0 || ADD_SUB_0 != 1'b0
            || ADD_SUB_1 != 1'b0 || MULT12X12_EN != "FALSE"
            || DYN_P_SEL != "FALSE" || DYN_A_SEL != "FALSE" || DYN_C_SEL != "FALSE" || DYN_CASI_SEL != "FALSE"
            || DYN_ACC_SEL != "FALSE" || DYN_ADD_SUB_0 != "FALSE" || DYN_ADD_SUB_1 != "FALSE"
            || (AREG_CLK != "BYPASS" && AREG_CLK != "CLK0") || (BREG_CLK != "BYPASS" && BREG_CLK != "CLK0")
            || (PREG_CLK != "BYPASS" && PREG_CLK != "CLK0") || (OREG_CLK != "BYPASS" && OREG_CLK != "CLK0")
            || AREG_CE != "CE0" || BREG_CE != "CE0" || PREG_CE != "CE0" || OREG_CE != "CE0") begin
            $display("MULTALU27X18 model: unsupported mode (see sim/models/MULTALU27X18.v)");
            $finish;
        end
    end
    always @(*) if (C_SEL == 1'b1 && C != 48'd0) begin
        $display("MULTALU27X18 model: C must be tied to zero (see sim/models/MULTALU27X18.v)");
        $finish;
    end

    wire clk = CLK[0], ce = CE[0];
    reg [26:0] a_q;
    reg [17:0] b_q;
    always @(posedge clk) if (ce) begin a_q <= A; b_q <= B; end
    wire signed [26:0] a_m = (AREG_CLK == "CLK0") ? a_q : A;
    wire signed [17:0] b_m = (BREG_CLK == "CLK0") ? b_q : B;
    wire signed [47:0] product = a_m * b_m;
    reg [47:0] p_q, o_q;
    always @(posedge clk) if (ce) p_q <= product;
    wire [47:0] p_m = (PREG_CLK == "CLK0") ? p_q : product;
    always @(posedge clk) if (ce) o_q <= p_m;
    assign DOUT = (OREG_CLK == "CLK0") ? o_q : p_m;
    assign CASO = 48'd0;
    assign SOA = a_m;
endmodule
