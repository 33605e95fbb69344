fn main() {
    println!("secmon-tui: under construction");
}
