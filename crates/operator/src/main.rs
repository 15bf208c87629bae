use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    azlin_operator::cli::main(azlin_operator::cli::Cli::parse())
}
