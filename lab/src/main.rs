use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = lab::cli::Cli::parse();
    match lab::cli::run(&cli) {
        Ok(out) => {
            print!("{out}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("imslab: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
