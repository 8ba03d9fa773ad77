fn main() {
    eprintln!("xtask: skeleton");
    std::process::exit(2);
}
