//! `goprobe`: parse the command line, run one session, map the outcome to an exit code
//! (0 ok or the traced command's status, 1 runtime error, 2 usage error).

use clap::Parser as _;
use goprobe::{cli::Cli, run};

fn main() {
    let cli = Cli::parse(); // exits with status 2 on a usage error
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            goprobe::diag!("goprobe: error: cannot start the async runtime: {err}");
            std::process::exit(1);
        }
    };
    let code = match runtime.block_on(run::run(cli)) {
        Ok(code) => code,
        Err(err) => {
            goprobe::diag!("goprobe: error: {err:#}");
            1
        }
    };
    std::process::exit(code);
}
