//! The ceiling for Kafka → archive: a bare rdkafka consumer that reads every partition of a
//! topic to its end and only counts messages and bytes.
//!
//! ```sh
//! kafka-count BROKERS TOPIC
//! ```
//!
//! Prints `messages bytes seconds`. Same librdkafka, same fetch settings as vigil's consumer
//! (`fetch.max.bytes`, `queued.max.messages.kbytes`, `fetch.queue.backoff.ms`), no group (assign, not subscribe), so
//! the figure is what the client library and broker allow, not a group join.

use std::time::{Duration, Instant};

use rdkafka::Message;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic] = &args[..] else {
        eprintln!("usage: kafka-count BROKERS TOPIC");
        std::process::exit(2);
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "kafka-count")
        .set("enable.auto.commit", "false")
        .set("queued.max.messages.kbytes", "16384")
        .set("fetch.max.bytes", "16777216")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("consumer");
    let meta = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = meta.topics()[0]
        .partitions()
        .iter()
        .map(|p| p.id())
        .collect();
    let mut tpl = TopicPartitionList::new();
    let mut end = 0i64;
    for &p in &partitions {
        let (lo, hi) = consumer
            .fetch_watermarks(topic, p, Duration::from_secs(10))
            .expect("watermarks");
        end += hi - lo;
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    consumer.assign(&tpl).expect("assign");
    let started = Instant::now();
    let (mut messages, mut bytes) = (0i64, 0u64);
    while messages < end {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(100)) {
            messages += 1;
            bytes += m.payload().map_or(0, |p| p.len() as u64);
        }
    }
    println!("{messages} {bytes} {:.3}", started.elapsed().as_secs_f64());
}
