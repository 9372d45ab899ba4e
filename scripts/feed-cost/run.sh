#!/bin/sh
# The cost of the durable change feed (issue 9 item 1), in instructions:
# 4,000 upserts over 500 keys in 200 batches of 20 through a BlockingReplica,
# on MemoryStore and in-memory SQLite, with no feed and with a feed that
# does nothing. Needs valgrind. Uses $CARGO_TARGET_DIR if set.
set -eu
cd "$(dirname "$0")"
[ -f Cargo.lock ] || cp ../../Cargo.lock .
cargo build --release --quiet
bin="${CARGO_TARGET_DIR:-target}/release/feed-cost"
for backend in memory sqlite; do
    for mode in none feed; do
        count=$(valgrind --tool=callgrind --toggle-collect='feed_cost::run*' \
            --callgrind-out-file=/dev/null "$bin" "$mode" "$backend" 2>&1 |
            sed -n 's/.*Collected : //p')
        echo "$backend $mode $count"
    done
done
