//! `cryptvol`: parse the command line, run it, map failure to an exit code.

use clap::Parser;

fn main() {
    let cli = cryptvol::cli::Cli::parse();
    if let Err(e) = cryptvol::cli::run(cli) {
        if cryptvol::cli::is_broken_pipe(&e) {
            // The reader went away (`| head`): end as a SIGPIPE'd tool does.
            std::process::exit(141);
        }
        eprintln!("cryptvol: {}", cryptvol::cli::error_chain(&e));
        std::process::exit(1);
    }
}
