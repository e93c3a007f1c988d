// Behavioural model of the Lattice ECP5 MULT18X18D, for simulation only (Verilator).
// Written for squeezehw from the primitive's documented behaviour; it covers the modes that
// squeezehw.hw.multiplier.RegisteredMultiplier uses and stops on any other:
//   P = A * B (18 x 18 -> 36 bits, each operand signed when SIGNEDA / SIGNEDB is high);
//   REG_INPUTA_CLK / REG_INPUTB_CLK / REG_OUTPUT_CLK = "CLK0" or "NONE", every register on CE0
//   (RST0 tied low), no pipeline register, no C input, no cascade (SRIA/SRIB) ports.
// The input register holds A, B and the SIGNED flags; the output register holds P.
module MULT18X18D(A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17,
    B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17,
    C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17,
    SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0,
    P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35);
    parameter REG_INPUTA_CLK = "NONE";
    parameter REG_INPUTA_CE = "CE0";
    parameter REG_INPUTA_RST = "RST0";
    parameter REG_INPUTB_CLK = "NONE";
    parameter REG_INPUTB_CE = "CE0";
    parameter REG_INPUTB_RST = "RST0";
    parameter REG_INPUTC_CLK = "NONE";
    parameter REG_PIPELINE_CLK = "NONE";
    parameter REG_OUTPUT_CLK = "NONE";
    parameter REG_OUTPUT_CE = "CE0";
    parameter REG_OUTPUT_RST = "RST0";
    parameter CLK0_DIV = "ENABLED";
    parameter CLK1_DIV = "ENABLED";
    parameter CLK2_DIV = "ENABLED";
    parameter CLK3_DIV = "ENABLED";
    parameter HIGHSPEED_CLK = "NONE";
    parameter GSR = "ENABLED";
    parameter CAS_MATCH_REG = "FALSE";
    parameter SOURCEB_MODE = "B_SHIFT";
    parameter MULT_BYPASS = "DISABLED";
    parameter RESETMODE = "SYNC";
    input A0, A1, A2, A3, A4, A5, A6, A7, A8, A9, A10, A11, A12, A13, A14, A15, A16, A17;
    input B0, B1, B2, B3, B4, B5, B6, B7, B8, B9, B10, B11, B12, B13, B14, B15, B16, B17;
    input C0, C1, C2, C3, C4, C5, C6, C7, C8, C9, C10, C11, C12, C13, C14, C15, C16, C17;
    input SIGNEDA, SIGNEDB, SOURCEA, SOURCEB, CLK0, CE0, RST0;
    output P0, P1, P2, P3, P4, P5, P6, P7, P8, P9, P10, P11, P12, P13, P14, P15, P16, P17, P18, P19, P20, P21, P22, P23, P24, P25, P26, P27, P28, P29, P30, P31, P32, P33, P34, P35;

    initial begin
        if (REG_PIPELINE_CLK != "NONE" || REG_INPUTC_CLK != "NONE" || MULT_BYPASS != "DISABLED"
            || (REG_INPUTA_CLK != "NONE" && REG_INPUTA_CLK != "CLK0")
            || (REG_INPUTB_CLK != "NONE" && REG_INPUTB_CLK != "CLK0")
            || (REG_OUTPUT_CLK != "NONE" && REG_OUTPUT_CLK != "CLK0")
            || REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" || REG_OUTPUT_CE != "CE0") begin
            $display("MULT18X18D model: unsupported mode (see sim/models/MULT18X18D.v)");
            $finish;
        end
    end

    wire [17:0] a = {A17, A16, A15, A14, A13, A12, A11, A10, A9, A8, A7, A6, A5, A4, A3, A2, A1, A0};
    wire [17:0] b = {B17, B16, B15, B14, B13, B12, B11, B10, B9, B8, B7, B6, B5, B4, B3, B2, B1, B0};
    reg [17:0] a_q, b_q;
    reg sa_q, sb_q;
    always @(posedge CLK0) if (CE0) begin
        a_q <= a; b_q <= b; sa_q <= SIGNEDA; sb_q <= SIGNEDB;
    end
    wire [17:0] a_m = (REG_INPUTA_CLK == "CLK0") ? a_q : a;
    wire [17:0] b_m = (REG_INPUTB_CLK == "CLK0") ? b_q : b;
    wire sa_m = (REG_INPUTA_CLK == "CLK0") ? sa_q : SIGNEDA;
    wire sb_m = (REG_INPUTB_CLK == "CLK0") ? sb_q : SIGNEDB;
    wire signed [36:0] a_x = {{19{sa_m & a_m[17]}}, a_m};
    wire signed [36:0] b_x = {{19{sb_m & b_m[17]}}, b_m};
    wire signed [36:0] product = a_x * b_x;
    reg [35:0] p_q;
    always @(posedge CLK0) if (CE0) p_q <= product[35:0];
    wire [35:0] p = (REG_OUTPUT_CLK == "CLK0") ? p_q : product[35:0];
    assign {P35, P34, P33, P32, P31, P30, P29, P28, P27, P26, P25, P24, P23, P22, P21, P20, P19, P18, P17, P16, P15, P14, P13, P12, P11, P10, P9, P8, P7, P6, P5, P4, P3, P2, P1, P0} = p;
endmodule
