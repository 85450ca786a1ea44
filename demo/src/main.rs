//! The catalogue demo: a small product-catalogue HTTP service (axum) whose reads go through
//! `hybridcache`, run as two instances to show a change made through one reaching the other.
//!
//! `make demo` does everything: it starts a throwaway redis-server with the module, two
//! instances of this service (A and B) on free ports, and then `demo story`, which drives
//! them over HTTP and checks what they answer (scripts/demo.sh).
//!
//! # The service (`demo serve`)
//!
//! | endpoint | what it does |
//! |---|---|
//! | `GET /products/{id}` | `get_or_set("product:{id}")`, tagged `product:{id}` and `category:{name}` |
//! | `GET /categories/{name}` | the category's products, `get_or_set("category:{name}")`, tagged `category:{name}` and `product:{id}` of each product in it |
//! | `PUT /products/{id}` | changes the product in the database (JSON body with any of `name`, `category`, `price_cents`), removes the tag `product:{id}` (the product and every cached list holding it, on every instance), then writes the new product through (`set`) |
//! | `POST /categories/{name}/invalidate` | `remove_by_tag("category:{name}")` |
//! | `GET /stats` | the cache's counters, L1 size, database queries of this instance |
//!
//! Reads answer `{"instance", "source", "took_ms", ...}`: `source` is where the value came
//! from (`l1`: this process's memory, `redis`: the shared L2, `database`: the factory ran),
//! `took_ms` the time the server spent. The factory tells `database` exactly; `l1` and
//! `redis` are told apart by the cache's counters (`stats()` before and after), which is
//! exact as long as requests do not overlap, as in the story.
//!
//! # The source of truth
//!
//! Both instances must read one database, or a change made through A could never show on B
//! however good the cache. The "database" is therefore a plain Redis hash, `demo:db:products`
//! (field: product id, value: the product as JSON), in the same Redis as the cache but
//! outside its namespace (`demo:cache:`) and never touched by `HC.*` commands: plain
//! `HGET`/`HVALS`/`HSET` through a `redis` connection of its own. Every query first sleeps
//! 20 ms to stand for a real database's latency, so the difference between a cache hit and
//! a query shows. Each instance seeds the hash at start with `HSETNX` (10 products in 3
//! categories; a product already there is left as it is), so starting both at once is safe.
//!
//! # By hand
//!
//! ```sh
//! make run                                                   # redis-server + module on 6379
//! cargo run --release -p hybridcache-demo -- serve --name A --port 3001
//! cargo run --release -p hybridcache-demo -- serve --name B --port 3002
//! curl -s localhost:3001/products/1                           # source: database
//! curl -s localhost:3002/products/1                           # source: redis, then l1
//! curl -s -X PUT -H 'content-type: application/json' -d '{"price_cents":9900}' localhost:3001/products/1
//! curl -s localhost:3002/products/1                           # the new price
//! curl -s -X POST localhost:3002/categories/lamps/invalidate
//! cargo run --release -p hybridcache-demo -- story http://127.0.0.1:3001 http://127.0.0.1:3002
//! ```
//!
//! Settings: `REDIS_URL` (default `redis://127.0.0.1:6379/`), `PORT` or `--port` (default
//! 3000), `INSTANCE` or `--name` (default `demo`). The service listens on 127.0.0.1 only.

mod http;
mod service;
mod story;

use std::process::ExitCode;

const USAGE: &str = "\
usage: demo [serve] [--name NAME] [--port PORT]   run the catalogue service (REDIS_URL, PORT, INSTANCE)
       demo story A_URL B_URL                     drive two running instances through the story";

#[tokio::main]
async fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        None => service::serve(&[]).await,
        Some("serve") => service::serve(&args[1..]).await,
        Some("story") => match &args[1..] {
            [a, b] => story::run(a, b).await,
            _ => Err(USAGE.into()),
        },
        Some("-h" | "--help") => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(first) if first.starts_with("--") => service::serve(&args).await,
        Some(other) => Err(format!("unknown command {other:?}\n{USAGE}").into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
