//! The catalogue service: the database (a plain Redis hash, see the crate docs), the cache
//! and the HTTP endpoints.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hybridcache::{EntryOptions, FactoryContext, HybridCache, Stats};
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The Redis hash holding the products (the source of truth), outside the cache's namespace.
pub const DB_KEY: &str = "demo:db:products";
/// Prefix of the cache's keys and tags in Redis.
const NAMESPACE: &str = "demo:cache:";
/// What every database query costs on top of its Redis round trip.
pub const DB_LATENCY: Duration = Duration::from_millis(20);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub category: String,
    pub price_cents: u64,
}

fn seed_products() -> Vec<Product> {
    [
        (1, "Arc floor lamp", "lamps", 12900),
        (2, "Brass desk lamp", "lamps", 5900),
        (3, "Paper pendant", "lamps", 3900),
        (4, "Oak dining chair", "chairs", 14900),
        (5, "Folding chair", "chairs", 2900),
        (6, "Wool armchair", "chairs", 39900),
        (7, "Bar stool", "chairs", 7900),
        (8, "Standing desk", "desks", 49900),
        (9, "Writing desk", "desks", 29900),
        (10, "Corner desk", "desks", 34900),
    ]
    .into_iter()
    .map(|(id, name, category, price_cents)| Product {
        id,
        name: name.into(),
        category: category.into(),
        price_cents,
    })
    .collect()
}

/// An error of the database.
#[derive(Debug)]
pub struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "database: {}", self.0)
    }
}

impl std::error::Error for DbError {}

/// The source of truth, shared by every instance: a plain Redis hash, product id -> JSON.
#[derive(Clone)]
struct Db {
    redis: ConnectionManager,
    queries: Arc<AtomicU64>,
}

impl Db {
    async fn connect(url: &str) -> Result<Self, redis::RedisError> {
        let redis = redis::Client::open(url)?.get_connection_manager().await?;
        Ok(Self {
            redis,
            queries: Arc::default(),
        })
    }

    /// Adds the seed products that are missing (`HSETNX`: changes made earlier stay).
    async fn seed(&self) -> Result<(), DbError> {
        let mut pipe = redis::pipe();
        for product in seed_products() {
            let json = serde_json::to_string(&product).map_err(|e| DbError(e.to_string()))?;
            pipe.cmd("HSETNX").arg(DB_KEY).arg(product.id).arg(json);
        }
        let _: Vec<i64> = pipe
            .query_async(&mut self.redis.clone())
            .await
            .map_err(|e| DbError(e.to_string()))?;
        Ok(())
    }

    /// One query: the simulated latency, then the command.
    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, DbError> {
        self.queries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(DB_LATENCY).await;
        cmd.query_async(&mut self.redis.clone())
            .await
            .map_err(|e| DbError(e.to_string()))
    }

    async fn product(&self, id: u64) -> Result<Option<Product>, DbError> {
        let raw: Option<String> = self.query(redis::cmd("HGET").arg(DB_KEY).arg(id)).await?;
        raw.map(|raw| serde_json::from_str(&raw).map_err(|e| DbError(e.to_string())))
            .transpose()
    }

    async fn category(&self, name: &str) -> Result<Vec<Product>, DbError> {
        let rows: Vec<String> = self.query(redis::cmd("HVALS").arg(DB_KEY)).await?;
        let mut products = Vec::new();
        for row in rows {
            let product: Product =
                serde_json::from_str(&row).map_err(|e| DbError(e.to_string()))?;
            if product.category == name {
                products.push(product);
            }
        }
        products.sort_by_key(|p| p.id);
        Ok(products)
    }

    async fn save(&self, product: &Product) -> Result<(), DbError> {
        let json = serde_json::to_string(product).map_err(|e| DbError(e.to_string()))?;
        let _: i64 = self
            .query(redis::cmd("HSET").arg(DB_KEY).arg(product.id).arg(json))
            .await?;
        Ok(())
    }
}

struct App {
    name: String,
    cache: HybridCache,
    db: Db,
}

type AppState = State<Arc<App>>;

/// The tags of a cached product: `remove_by_tag` on either drops it everywhere.
fn product_tags(product: &Product) -> [String; 2] {
    [
        format!("product:{}", product.id),
        format!("category:{}", product.category),
    ]
}

/// What one read learned about where its value came from.
#[derive(Default)]
struct Trace {
    factory_ran: AtomicBool,
    not_found: AtomicBool,
}

impl Trace {
    /// `database` when this read's factory ran; else `redis` or `l1` from the counters.
    fn source(&self, before: &Stats, after: &Stats) -> &'static str {
        if self.factory_ran.load(Ordering::Relaxed) || after.factory_runs > before.factory_runs {
            "database"
        } else if after.l2_hits > before.l2_hits {
            "redis"
        } else {
            "l1"
        }
    }
}

fn millis(since: Instant) -> f64 {
    (since.elapsed().as_secs_f64() * 1e6).round() / 1000.0
}

/// An error answer: `{"error": ...}` with a status.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<DbError> for ApiError {
    fn from(e: DbError) -> Self {
        ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
    }
}

impl From<hybridcache::Error> for ApiError {
    fn from(e: hybridcache::Error) -> Self {
        ApiError(StatusCode::BAD_GATEWAY, e.to_string())
    }
}

/// A read's error: 404 when the factory found nothing.
fn read_error(trace: &Trace, what: String, e: hybridcache::Error) -> ApiError {
    if trace.not_found.load(Ordering::Relaxed) {
        ApiError(StatusCode::NOT_FOUND, format!("no {what}"))
    } else {
        e.into()
    }
}

async fn get_product(State(app): AppState, Path(id): Path<u64>) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let before = app.cache.stats();
    let trace = Arc::new(Trace::default());
    let (db, seen) = (app.db.clone(), trace.clone());
    let product = app
        .cache
        .get_or_set_with(
            &format!("product:{id}"),
            move |mut ctx: FactoryContext<Product>| async move {
                seen.factory_ran.store(true, Ordering::Relaxed);
                match db.product(id).await {
                    Ok(Some(product)) => {
                        // The category tag is known only once the product is loaded.
                        let options = ctx.options().clone().tags(product_tags(&product));
                        ctx.set_options(options);
                        ctx.value(product)
                    }
                    Ok(None) => {
                        seen.not_found.store(true, Ordering::Relaxed);
                        ctx.fail(format!("no product {id}"))
                    }
                    Err(e) => ctx.fail(e),
                }
            },
            EntryOptions::new(),
        )
        .await
        .map_err(|e| read_error(&trace, format!("product {id}"), e))?;
    Ok(Json(json!({
        "instance": app.name,
        "source": trace.source(&before, &app.cache.stats()),
        "took_ms": millis(started),
        "product": &*product,
    })))
}

async fn get_category(
    State(app): AppState,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let before = app.cache.stats();
    let trace = Arc::new(Trace::default());
    let (db, seen, category) = (app.db.clone(), trace.clone(), name.clone());
    let products = app
        .cache
        .get_or_set_with(
            &format!("category:{name}"),
            move |mut ctx: FactoryContext<Vec<Product>>| async move {
                seen.factory_ran.store(true, Ordering::Relaxed);
                match db.category(&category).await {
                    Ok(products) if products.is_empty() => {
                        seen.not_found.store(true, Ordering::Relaxed);
                        ctx.fail(format!("no category {category}"))
                    }
                    Ok(products) => {
                        // The list goes when the category goes, and when any of its
                        // products changes.
                        let tags = std::iter::once(format!("category:{category}"))
                            .chain(products.iter().map(|p| format!("product:{}", p.id)));
                        let options = ctx.options().clone().tags(tags);
                        ctx.set_options(options);
                        ctx.value(products)
                    }
                    Err(e) => ctx.fail(e),
                }
            },
            EntryOptions::new(),
        )
        .await
        .map_err(|e| read_error(&trace, format!("category {name}"), e))?;
    Ok(Json(json!({
        "instance": app.name,
        "source": trace.source(&before, &app.cache.stats()),
        "took_ms": millis(started),
        "products": &*products,
    })))
}

/// A change to a product: the fields given replace the stored ones.
#[derive(Deserialize)]
struct Change {
    name: Option<String>,
    category: Option<String>,
    price_cents: Option<u64>,
}

async fn put_product(
    State(app): AppState,
    Path(id): Path<u64>,
    Json(change): Json<Change>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let Some(old) = app.db.product(id).await? else {
        return Err(ApiError(StatusCode::NOT_FOUND, format!("no product {id}")));
    };
    let new = Product {
        id,
        name: change.name.unwrap_or_else(|| old.name.clone()),
        category: change.category.unwrap_or_else(|| old.category.clone()),
        price_cents: change.price_cents.unwrap_or(old.price_cents),
    };
    app.db.save(&new).await?;
    // The product and every cached list holding it carry `product:{id}`; a product moved to
    // another category also makes that category's list wrong.
    let mut tags = vec![format!("product:{id}")];
    if new.category != old.category {
        tags.push(format!("category:{}", new.category));
    }
    let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
    let removed = app.cache.remove_by_tags(&tags).await?;
    // Write-through: the next read of the product, on any instance, is a Redis hit.
    let options = EntryOptions::new().tags(product_tags(&new));
    app.cache
        .set(&format!("product:{id}"), new.clone(), options)
        .await?;
    Ok(Json(json!({
        "instance": app.name,
        "took_ms": millis(started),
        "removed": removed,
        "product": new,
    })))
}

async fn invalidate_category(
    State(app): AppState,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let started = Instant::now();
    let removed = app.cache.remove_by_tag(&format!("category:{name}")).await?;
    Ok(Json(json!({
        "instance": app.name,
        "took_ms": millis(started),
        "removed": removed,
    })))
}

async fn stats(State(app): AppState) -> Json<Value> {
    let s = app.cache.stats();
    Json(json!({
        "instance": app.name,
        "subscribed": app.cache.is_subscribed(),
        "l1_entries": app.cache.l1_entry_count(),
        "db_queries": app.db.queries.load(Ordering::Relaxed),
        "cache": {
            "l1_hits": s.l1_hits,
            "l1_misses": s.l1_misses,
            "l2_hits": s.l2_hits,
            "l2_misses": s.l2_misses,
            "factory_runs": s.factory_runs,
            "events_received": s.events_received,
            "l1_flushes": s.l1_flushes,
            "subscriptions": s.subscriptions,
            "fail_safe_hits": s.fail_safe_hits,
        },
    }))
}

/// The value of `--flag VALUE` in `args`, else of the environment variable `env`.
fn setting(args: &[String], flag: &str, env: &str) -> Result<Option<String>, String> {
    match args.iter().position(|a| a == flag) {
        Some(at) => match args.get(at + 1) {
            Some(value) => Ok(Some(value.clone())),
            None => Err(format!("{flag} needs a value")),
        },
        None => Ok(std::env::var(env).ok()),
    }
}

/// `demo serve [--name NAME] [--port PORT]`: runs until killed.
pub async fn serve(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    if let Some(unknown) = args
        .iter()
        .step_by(2)
        .find(|a| !matches!(a.as_str(), "--name" | "--port"))
    {
        return Err(format!("unknown option {unknown:?} (options: --name, --port)").into());
    }
    let url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/".into());
    let name = setting(args, "--name", "INSTANCE")?.unwrap_or_else(|| "demo".into());
    let port: u16 = match setting(args, "--port", "PORT")? {
        Some(port) => port.parse().map_err(|_| format!("bad port {port:?}"))?,
        None => 3000,
    };

    let db = Db::connect(&url).await?;
    db.seed().await?;
    let cache = HybridCache::builder(url.as_str())
        .namespace(NAMESPACE)
        .name(format!("catalogue-{name}"))
        .default_options(
            EntryOptions::new()
                .ttl(Duration::from_secs(600))
                .l1_ttl(Duration::from_secs(60)),
        )
        .build()
        .await?;
    let app = Arc::new(App {
        name: name.clone(),
        cache,
        db,
    });
    let router = Router::new()
        .route("/products/{id}", get(get_product).put(put_product))
        .route("/categories/{name}", get(get_category))
        .route("/categories/{name}/invalidate", post(invalidate_category))
        .route("/stats", get(stats))
        .with_state(app);
    // Loopback unless HOST says otherwise (the Docker image sets HOST=0.0.0.0).
    let host = std::env::var("HOST").unwrap_or_else(|_| "127.0.0.1".into());
    let listener = tokio::net::TcpListener::bind((host.as_str(), port)).await?;
    println!(
        "instance {name}: listening on http://{} (redis {url}, database hash {DB_KEY})",
        listener.local_addr()?
    );
    axum::serve(listener, router)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
