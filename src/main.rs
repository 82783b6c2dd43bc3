fn main() -> std::process::ExitCode {
    trail::cli::main()
}
