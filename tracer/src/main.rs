//! `goprobe`: parse the command line, run one session (or `goprobe verify`), map the
//! outcome to an exit code (0 ok or the traced command's status, 1 runtime error, 2 usage
//! error; verify: 0 PASS, 3 WARN, 4 FAIL).

use clap::Parser as _;
use goprobe::{cli::Cli, run, verify};

enum Invocation {
    Trace(Box<Cli>),
    Verify(verify::VerifyCli),
}

fn main() {
    // `verify` is a subcommand of its own; the tracing command line stays flat (a
    // command named verify is still `goprobe -- verify`).
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let verify = args.get(1).is_some_and(|arg| arg == "verify");
    // Both exit with status 2 on a usage error.
    let invocation = if verify {
        args.remove(0);
        Invocation::Verify(verify::VerifyCli::parse_from(args))
    } else {
        Invocation::Trace(Box::new(Cli::parse()))
    };
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
    let outcome = match invocation {
        Invocation::Trace(cli) => runtime.block_on(run::run(*cli)),
        Invocation::Verify(args) => runtime.block_on(verify::run(args)),
    };
    let code = match outcome {
        Ok(code) => code,
        Err(err) => {
            let text = format!("{err:#}");
            goprobe::diag!("goprobe: error: {text}");
            if let Some(hint) = goprobe::preflight::perf_event_refusal_hint(&text) {
                goprobe::diag!("goprobe: {hint}");
            }
            1
        }
    };
    std::process::exit(code);
}
