//! `demo story A_URL B_URL`: drives two running instances over HTTP, prints what happens
//! step by step, and checks it. Fails (non-zero exit) when an expectation does not hold, so
//! `make demo` is a smoke test too.

use crate::http::request;
use crate::service::{Product, DB_KEY, DB_LATENCY};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// How long B may take to serve a change made through A before the story fails.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(5);
/// How long the instances may take to start answering.
const START_LIMIT: Duration = Duration::from_secs(20);
/// Price changes measured in step 4.
const ROUNDS: usize = 20;
/// The product the story is about.
const PRODUCT: u64 = 1;

/// A product read: where it came from, what the server spent, what it got.
struct Read {
    source: String,
    took_ms: f64,
    product: Product,
    /// Round trip seen by the story (HTTP included).
    round_trip: Duration,
}

struct Story {
    a: String,
    b: String,
    checks: usize,
    failures: Vec<String>,
}

fn price(cents: u64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

fn source_label(source: &str) -> &str {
    match source {
        "l1" => "L1 hit",
        "redis" => "Redis",
        other => other,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.3} ms", d.as_secs_f64() * 1e3)
}

fn entries(n: u64) -> String {
    match n {
        1 => "1 entry".into(),
        n => format!("{n} entries"),
    }
}

/// One request's line: instance, method, path, what happened, server time, details.
fn line(who: &str, method: &str, path: &str, outcome: &str, took_ms: f64, detail: &str) {
    println!("   {who}  {method:<4} {path:<20} {outcome:<9} {took_ms:>8.3} ms   {detail}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(at).copied().unwrap_or_default()
}

fn step(title: &str) {
    println!("\n== {title}");
}

impl Story {
    fn url(&self, who: &str) -> &str {
        if who == "A" {
            &self.a
        } else {
            &self.b
        }
    }

    /// Records an expectation; a failed one is printed at once and fails the story.
    fn expect(&mut self, holds: bool, what: impl Into<String>) {
        self.checks += 1;
        if !holds {
            let what = what.into();
            println!("   !! expected: {what}");
            self.failures.push(what);
        }
    }

    async fn call(
        &self,
        who: &str,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, String> {
        let (status, reply) = request(self.url(who), method, path, body.as_ref()).await?;
        if status != 200 {
            return Err(format!("{who} {method} {path}: status {status}: {reply}"));
        }
        Ok(reply)
    }

    /// `GET /products/{id}` on `who`, without printing.
    async fn read(&self, who: &str, id: u64) -> Result<Read, String> {
        let started = Instant::now();
        let reply = self
            .call(who, "GET", &format!("/products/{id}"), None)
            .await?;
        let round_trip = started.elapsed();
        let product = serde_json::from_value(reply["product"].clone())
            .map_err(|e| format!("{who}: bad product in {reply}: {e}"))?;
        Ok(Read {
            source: reply["source"].as_str().unwrap_or("?").to_string(),
            took_ms: reply["took_ms"].as_f64().unwrap_or(f64::NAN),
            product,
            round_trip,
        })
    }

    fn show_read(&self, who: &str, read: &Read, note: &str) {
        let p = &read.product;
        line(
            who,
            "GET",
            &format!("/products/{}", p.id),
            source_label(&read.source),
            read.took_ms,
            &format!("{} ({}) {}{note}", p.name, p.category, price(p.price_cents)),
        );
    }

    /// Reads and prints, checking the source.
    async fn read_expecting(
        &mut self,
        who: &str,
        id: u64,
        source: &str,
        why: &str,
    ) -> Result<Read, String> {
        let read = self.read(who, id).await?;
        self.show_read(who, &read, "");
        self.expect(
            read.source == source,
            format!(
                "{who}'s read of product {id} from {} ({why}), not {}",
                source_label(source),
                source_label(&read.source)
            ),
        );
        Ok(read)
    }

    async fn read_category(&mut self, who: &str, name: &str, source: &str) -> Result<(), String> {
        let path = format!("/categories/{name}");
        let reply = self.call(who, "GET", &path, None).await?;
        let got = reply["source"].as_str().unwrap_or("?");
        let names: Vec<&str> = reply["products"]
            .as_array()
            .map(|ps| ps.iter().filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        line(
            who,
            "GET",
            &path,
            source_label(got),
            reply["took_ms"].as_f64().unwrap_or(f64::NAN),
            &names.join(", "),
        );
        self.expect(
            got == source,
            format!(
                "{who}'s read of category {name} from {}, not {}",
                source_label(source),
                source_label(got)
            ),
        );
        Ok(())
    }

    /// `PUT /products/{id}` with a new price on `who`; when it answered.
    async fn change_price(
        &self,
        who: &str,
        id: u64,
        cents: u64,
        show: bool,
    ) -> Result<Instant, String> {
        let body = json!({ "price_cents": cents });
        let reply = self
            .call(who, "PUT", &format!("/products/{id}"), Some(body.clone()))
            .await?;
        let answered = Instant::now();
        if show {
            line(
                who,
                "PUT",
                &format!("/products/{id}"),
                "saved",
                reply["took_ms"].as_f64().unwrap_or(f64::NAN),
                &body.to_string(),
            );
            println!(
                "         database updated; tag product:{id} removed ({}); new value written through to Redis",
                entries(reply["removed"].as_u64().unwrap_or(0)),
            );
        }
        Ok(answered)
    }

    /// Reads `id` on `who` until it has the price `cents`: the answer, how long after
    /// `since` it came, and how many answers still had another price.
    async fn poll_price(
        &self,
        who: &str,
        id: u64,
        cents: u64,
        since: Instant,
    ) -> Result<Option<(Read, Duration, usize)>, String> {
        let mut stale = 0;
        loop {
            let read = self.read(who, id).await?;
            if read.product.price_cents == cents {
                return Ok(Some((read, since.elapsed(), stale)));
            }
            stale += 1;
            if since.elapsed() > PROPAGATION_LIMIT {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
    }

    async fn wait_until_up(&self, who: &str) -> Result<(), String> {
        let deadline = Instant::now() + START_LIMIT;
        loop {
            match request(self.url(who), "GET", "/stats", None).await {
                Ok((200, _)) => return Ok(()),
                outcome if Instant::now() >= deadline => {
                    return Err(format!(
                        "instance {who} ({}) did not answer within {START_LIMIT:?}: {outcome:?}",
                        self.url(who)
                    ))
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    async fn stats(&self, who: &str) -> Result<Value, String> {
        self.call(who, "GET", "/stats", None).await
    }
}

pub async fn run(a: &str, b: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut s = Story {
        a: a.trim_end_matches('/').to_string(),
        b: b.trim_end_matches('/').to_string(),
        checks: 0,
        failures: Vec::new(),
    };
    s.wait_until_up("A").await?;
    s.wait_until_up("B").await?;
    println!("hybridcache demo: one catalogue service, two instances, one Redis");
    println!(
        "   A {}   B {}   (two processes, each with its own L1)",
        s.a, s.b
    );
    println!(
        "   database: Redis hash {DB_KEY}, shared by A and B, {} ms per query",
        DB_LATENCY.as_millis()
    );
    println!("   cache:    L1 in each process -> Redis (entries tagged product:{{id}}, category:{{name}})");
    println!("   a line:   instance, request, where the answer came from, time spent in the server, answer");

    step("0. Start from an empty cache (drops whatever an earlier run left)");
    for category in ["lamps", "chairs", "desks"] {
        let path = format!("/categories/{category}/invalidate");
        s.call("A", "POST", &path, None).await?;
    }
    println!("   A  POST /categories/{{lamps,chairs,desks}}/invalidate");
    let before_b = s.stats("B").await?;

    step(&format!(
        "1. A reads product {PRODUCT} twice: from the database, then from A's own memory"
    ));
    let first = s
        .read_expecting("A", PRODUCT, "database", "nothing is cached yet")
        .await?;
    s.read_expecting("A", PRODUCT, "l1", "A kept what it loaded")
        .await?;

    step(&format!(
        "2. B reads product {PRODUCT} twice: from Redis (A put it there), then from B's own memory"
    ));
    s.read_expecting("B", PRODUCT, "redis", "A's read stored it in Redis")
        .await?;
    s.read_expecting("B", PRODUCT, "l1", "B kept what it read")
        .await?;

    step(&format!(
        "3. Change product {PRODUCT}'s price through A; B serves the new price at once"
    ));
    let old = first.product.price_cents;
    let new = if old > 2000 { old - 1000 } else { old + 1000 };
    let answered = s.change_price("A", PRODUCT, new, true).await?;
    match s.poll_price("B", PRODUCT, new, answered).await? {
        Some((read, after, stale)) => {
            s.show_read("B", &read, "  <- new price");
            let first_try = match stale {
                0 => "its first answer after the PUT".to_string(),
                1 => "after 1 answer with the old price".to_string(),
                n => format!("after {n} answers with the old price"),
            };
            println!(
                "   => B served the new price {} after A's PUT answered ({first_try})",
                ms(after)
            );
        }
        None => s.expect(
            false,
            format!("B to serve the new price within {PROPAGATION_LIMIT:?}"),
        ),
    }

    step(&format!(
        "4. {ROUNDS} more price changes through A, each read on B just before and right after"
    ));
    let (mut propagation, mut warm, mut stale_total, mut l1_round_trips) =
        (Vec::new(), 0, 0, Vec::new());
    let mut price_now = new;
    for _ in 0..ROUNDS {
        let before = s.read("B", PRODUCT).await?;
        if before.source == "l1" {
            warm += 1;
            l1_round_trips.push(before.round_trip);
        }
        price_now = if price_now == old { new } else { old };
        let answered = s.change_price("A", PRODUCT, price_now, false).await?;
        match s.poll_price("B", PRODUCT, price_now, answered).await? {
            Some((_, after, stale)) => {
                propagation.push(after);
                stale_total += stale;
            }
            None => s.expect(
                false,
                format!(
                    "B to serve price {} within {PROPAGATION_LIMIT:?}",
                    price(price_now)
                ),
            ),
        }
    }
    propagation.sort();
    l1_round_trips.sort();
    println!(
        "   A's PUT answered -> B answered with the new price:  min {}, p50 {}, max {}",
        ms(propagation.first().copied().unwrap_or_default()),
        ms(percentile(&propagation, 0.5)),
        ms(propagation.last().copied().unwrap_or_default()),
    );
    println!(
        "   for scale, a whole HTTP request to B answered from its L1:  p50 {}",
        ms(percentile(&l1_round_trips, 0.5)),
    );
    println!(
        "   B held the old price in L1 before {warm} of {ROUNDS} changes; answers with the old price after a PUT: {stale_total}"
    );
    s.expect(
        warm == ROUNDS,
        format!("B to hold the old price in L1 before every change ({warm} of {ROUNDS})"),
    );

    let category = first.product.category.clone();
    step(&format!(
        "5. Both read category {category}: A from the database, B from Redis"
    ));
    s.read_category("A", &category, "database").await?;
    s.read_category("B", &category, "redis").await?;

    step(&format!(
        "6. Invalidate category {category} through B; A's next reads go to the database"
    ));
    let path = format!("/categories/{category}/invalidate");
    let reply = s.call("B", "POST", &path, None).await?;
    let answered = Instant::now();
    let removed = reply["removed"].as_u64().unwrap_or(0);
    line(
        "B",
        "POST",
        &path,
        "removed",
        reply["took_ms"].as_f64().unwrap_or(f64::NAN),
        &format!(
            "{} (HC.DELTAG), from Redis and from every L1",
            entries(removed)
        ),
    );
    s.expect(
        removed >= 2,
        format!("at least 2 entries (product {PRODUCT} and the list) removed, not {removed}"),
    );
    let mut read = s.read("A", PRODUCT).await?;
    let mut l1_answers = 0;
    while read.source == "l1" && answered.elapsed() < PROPAGATION_LIMIT {
        l1_answers += 1;
        read = s.read("A", PRODUCT).await?;
    }
    s.show_read("A", &read, "");
    println!(
        "   => A dropped its L1 copy: {}",
        match l1_answers {
            0 => "its first read after B's POST answered went to the database".to_string(),
            1 => "1 read right after B's POST answered still hit it, before the tag event arrived"
                .to_string(),
            n => format!(
                "{n} reads right after B's POST answered still hit it, before the tag event arrived"
            ),
        }
    );
    s.expect(
        read.source == "database",
        format!(
            "A's read of product {PRODUCT} from the database after the invalidation, not {}",
            source_label(&read.source)
        ),
    );
    s.read_category("A", &category, "database").await?;

    step("7. Cache statistics of each instance (GET /stats)");
    let columns = [
        ("L1 hits", "l1_hits"),
        ("L1 misses", "l1_misses"),
        ("Redis hits", "l2_hits"),
        ("Redis misses", "l2_misses"),
        ("factory runs", "factory_runs"),
        ("events in", "events_received"),
    ];
    let mut header = String::from("      ");
    for (title, _) in columns {
        header += &format!("{title:>13}");
    }
    println!("{header}{:>13}", "DB queries");
    for who in ["A", "B"] {
        let stats = s.stats(who).await?;
        let mut row = format!("   {who}  ");
        for (_, field) in columns {
            row += &format!("{:>13}", stats["cache"][field].as_u64().unwrap_or(0));
        }
        println!("{row}{:>13}", stats["db_queries"].as_u64().unwrap_or(0));
        s.expect(
            stats["subscribed"] == json!(true),
            format!("{who}'s invalidation subscription to be up"),
        );
        if who == "B" {
            let queries = stats["db_queries"].as_u64().unwrap_or(0)
                - before_b["db_queries"].as_u64().unwrap_or(0);
            s.expect(
                queries == 0,
                format!("B to serve everything from the cache, yet it queried the database {queries} times"),
            );
        }
    }
    println!("   (events in: invalidation events received from the module. B never queried the");
    println!("   database: A's reads and writes filled Redis for it.)");

    println!();
    if s.failures.is_empty() {
        println!("demo: all {} checks passed", s.checks);
        Ok(())
    } else {
        Err(format!(
            "{} of {} checks failed:\n  - {}",
            s.failures.len(),
            s.checks,
            s.failures.join("\n  - ")
        )
        .into())
    }
}
