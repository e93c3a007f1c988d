// Simulation-only stimulus memory of squeezehw.hw.harness.SimHarness (fast Verilator builds).
// Same ports and timing as the Amaranth Memory it replaces (one synchronous write port, one
// synchronous read port with enable, not transparent), but it starts zeroed and, when the
// simulator is started with +in_mem=FILE, is filled from that hex file at time 0: no simulated
// cycles and no Python callback per beat, and no initial value per word in the Verilog.
module squeezehw_stimulus_mem #(parameter WIDTH = 8, parameter DEPTH = 16, parameter ABITS = 4) (
    input clk,
    input we,
    input [ABITS-1:0] waddr,
    input [WIDTH-1:0] wdata,
    input re,
    input [ABITS-1:0] raddr,
    output reg [WIDTH-1:0] rdata
);
    reg [WIDTH-1:0] mem [0:DEPTH-1];
    string file;
    integer k;
    initial begin
        rdata = 0;
        for (k = 0; k < DEPTH; k = k + 1) mem[k] = 0;
        if ($value$plusargs("in_mem=%s", file)) $readmemh(file, mem);
    end
    always @(posedge clk) begin
        if (we) mem[waddr] <= wdata;
        if (re) rdata <= mem[raddr];
    end
endmodule
