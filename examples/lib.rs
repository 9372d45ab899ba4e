//! The runnable examples of ecst that need nothing but ecst itself, smallest
//! first: `cargo run --example quickstart`, then `cargo run --example
//! schema_lock`. The two-process CRM example over NATS is `examples/crm/`.
