//! `memory::one_heap` keeps every thread on glibc's main heap. Its own test
//! binary without the test harness: no thread may start before the call.

fn main() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    if std::env::var_os("MALLOC_ARENA_MAX").is_some()
        || std::env::var_os("GLIBC_TUNABLES").is_some()
    {
        println!("test one_heap ... ignored, the environment sets malloc's arenas");
        println!("test result: ok. 0 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out");
        return;
    }
    peddlenet_store::memory::one_heap();
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let start = start.clone();
            std::thread::spawn(move || {
                start.wait();
                let held: Vec<Box<[u8; 64]>> = (0..20_000).map(|_| Box::new([1; 64])).collect();
                held.len()
            })
        })
        .collect();
    let n: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(n, 160_000);
    let extra =
        peddlenet_store::memory::extra_arenas(&std::fs::read_to_string("/proc/self/maps").unwrap());
    assert_eq!(
        extra, 0,
        "8 threads allocating at once made {extra} extra arenas"
    );
    // The summary `cargo test` prints for harnessed tests, for whoever counts.
    println!("test one_heap: 8 threads allocated on the main heap alone ... ok");
    println!("test result: ok. 1 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
}
