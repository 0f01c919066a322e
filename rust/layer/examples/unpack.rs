//! Unpack one layer from the command line, for profiling:
//!     cargo run --release --example unpack -- LAYER TARGET [FILE_WORKERS]
use std::path::Path;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: unpack LAYER TARGET [FILE_WORKERS]");
        std::process::exit(2);
    }
    let opts = berth_layer::UnpackOptions {
        file_workers: args.get(3).map(|w| w.parse().expect("FILE_WORKERS is a number")),
        ..Default::default()
    };
    let t = Instant::now();
    match berth_layer::unpack_layer_path(Path::new(&args[1]), Path::new(&args[2]), &opts) {
        Ok(stats) => println!("{:.3}s {stats:?}", t.elapsed().as_secs_f64()),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
