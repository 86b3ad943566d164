fn main() {
    eprintln!("footfall-gateway: ingest and the API are not built yet (issues #4 and #5)");
    std::process::exit(2);
}
