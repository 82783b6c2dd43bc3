// mimalloc instead of glibc's malloc: the server allocates and frees small
// buffers per request on every worker (requests, JSON values, responses), and
// glibc spent a visible share of the CPU in `_int_free` and
// `malloc_consolidate`. `TRAIL_BIN=... BIG_DB=... DURATION=10
// scripts/bench_http.sh`, two pairs alternating glibc and mimalloc builds:
// pages/s +15% and +20%, CSV export rows/s +46% and +39%, single POSTs +0.5%
// and +17%, batches +2% and +10%. The price: about 18 MB more resident at
// start and 11 MB more peak growth during the export (46 MB, limit 64 MB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    trail::cli::main()
}
