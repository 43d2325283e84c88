use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = lab::cli::Cli::parse();
    // The UE simulator, HSS and P-CSCF log through `tracing`; without a subscriber their
    // logs would go nowhere.
    if let Err(e) = opskit::log::init(&cli.log_level) {
        eprintln!("imslab: error: {e}");
        return std::process::ExitCode::FAILURE;
    }
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
