//! Small byte ranges of data files, read once for all of a server's statements.
//!
//! A statement looking up one trace id reads the bloom filter of every row group it cannot
//! rule out by statistics (a day of ten million records: 78 filters, 10 MB), and over S3 each
//! read is a request. A data file never changes once written (a Delta table adds and removes
//! whole files, each named anew), so a range of it read once is that range for as long as
//! the file exists: [`CachingRegistry`] hands DataFusion stores that keep ranges of at most
//! [`MAX_RANGE`] bytes of `.parquet` files, the least recently used going first beyond
//! [`BUDGET`] bytes in all. Anything else (logs, conditional or open-ended reads) goes to the
//! store as it is.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use datafusion::error::Result as DfResult;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetRange, GetResult, GetResultPayload, ListResult, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use url::Url;

/// The largest range kept: a bloom filter or a small column chunk, not a whole file.
pub const MAX_RANGE: u64 = 1 << 20;

/// The most bytes kept in all.
pub const BUDGET: usize = 64 << 20;

/// Which range of which file: the store's URL, the path in it, the range.
type Key = (Arc<str>, Path, Range<u64>);

/// The ranges kept, with when each was last used.
#[derive(Default)]
struct Kept {
    ranges: HashMap<Key, (Bytes, ObjectMeta, u64)>,
    by_use: BTreeMap<u64, Key>,
    bytes: usize,
    tick: u64,
}

impl Kept {
    fn get(&mut self, key: &Key) -> Option<(Bytes, ObjectMeta)> {
        self.tick += 1;
        let tick = self.tick;
        let (bytes, meta, used) = self.ranges.get_mut(key)?;
        let key = self
            .by_use
            .remove(used)
            .expect("every kept range is in by_use");
        *used = tick;
        let found = (bytes.clone(), meta.clone());
        self.by_use.insert(tick, key);
        Some(found)
    }

    fn put(&mut self, key: Key, bytes: Bytes, meta: ObjectMeta) {
        if self.ranges.contains_key(&key) {
            return;
        }
        self.tick += 1;
        self.bytes += bytes.len();
        self.by_use.insert(self.tick, key.clone());
        self.ranges.insert(key, (bytes, meta, self.tick));
        while self.bytes > BUDGET {
            let Some((_, oldest)) = self.by_use.pop_first() else {
                break;
            };
            if let Some((b, _, _)) = self.ranges.remove(&oldest) {
                self.bytes -= b.len();
            }
        }
    }
}

/// An object-store registry whose stores keep the small ranges of data files they read, in
/// one cache shared by every store registered (re-registering a table's store on every
/// statement keeps what was read).
pub struct CachingRegistry {
    stores: DefaultObjectStoreRegistry,
    kept: Arc<Mutex<Kept>>,
}

impl CachingRegistry {
    /// A registry with DataFusion's local file system (every `file://` URL) and an empty
    /// cache. The local file system is read through the cache like any store registered
    /// later: a local archive's tables are read through it, not through a store of their own.
    pub fn new() -> Self {
        let registry = Self {
            stores: DefaultObjectStoreRegistry::new(),
            kept: Arc::default(),
        };
        let file = Url::parse("file://").expect("a valid URL");
        let local = registry
            .stores
            .get_store(&file)
            .expect("DataFusion's registry starts with the local file system");
        registry.register_store(&file, local);
        registry
    }

    /// The bytes kept now.
    pub fn kept_bytes(&self) -> usize {
        self.kept.lock().unwrap_or_else(|e| e.into_inner()).bytes
    }
}

impl Default for CachingRegistry {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for CachingRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachingRegistry")
            .field("kept_bytes", &self.kept_bytes())
            .finish()
    }
}

impl ObjectStoreRegistry for CachingRegistry {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        let cached = Arc::new(RangeCached {
            inner: store,
            url: url.as_str().into(),
            kept: self.kept.clone(),
        });
        self.stores.register_store(url, cached)
    }

    fn deregister_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        self.stores.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        self.stores.get_store(url)
    }
}

/// A store that answers small reads of data files from the shared cache.
struct RangeCached {
    inner: Arc<dyn ObjectStore>,
    url: Arc<str>,
    kept: Arc<Mutex<Kept>>,
}

impl RangeCached {
    /// The key of a read that may be kept: a bounded range, small, of a data file, without
    /// conditions.
    fn key(&self, location: &Path, options: &GetOptions) -> Option<Key> {
        let Some(GetRange::Bounded(range)) = &options.range else {
            return None;
        };
        let plain = options.if_match.is_none()
            && options.if_none_match.is_none()
            && options.if_modified_since.is_none()
            && options.if_unmodified_since.is_none()
            && options.version.is_none()
            && !options.head;
        (plain
            && range.end > range.start
            && range.end - range.start <= MAX_RANGE
            && location.as_ref().ends_with(".parquet"))
        .then(|| (self.url.clone(), location.clone(), range.clone()))
    }

    fn answer(bytes: Bytes, meta: ObjectMeta, range: Range<u64>) -> GetResult {
        GetResult {
            payload: GetResultPayload::Stream(
                futures::stream::once(async move { Ok(bytes) }).boxed(),
            ),
            meta,
            range,
            attributes: Default::default(),
        }
    }
}

impl fmt::Debug for RangeCached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RangeCached({:?})", self.inner)
    }
}

impl fmt::Display for RangeCached {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RangeCached({})", self.inner)
    }
}

#[async_trait::async_trait]
impl ObjectStore for RangeCached {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let Some(key) = self.key(location, &options) else {
            return self.inner.get_opts(location, options).await;
        };
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key);
        if let Some((bytes, meta)) = kept {
            return Ok(Self::answer(bytes, meta, key.2));
        }
        let result = self.inner.get_opts(location, options).await?;
        let (meta, range) = (result.meta.clone(), result.range.clone());
        let bytes = result.bytes().await?;
        if range == key.2 && bytes.len() as u64 == range.end - range.start {
            self.kept.lock().unwrap_or_else(|e| e.into_inner()).put(
                key,
                bytes.clone(),
                meta.clone(),
            );
        }
        Ok(Self::answer(bytes, meta, range))
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    /// Counts the reads that reach the store.
    #[derive(Debug)]
    struct Counted(InMemory, std::sync::atomic::AtomicUsize);

    impl fmt::Display for Counted {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "Counted")
        }
    }

    #[async_trait::async_trait]
    impl ObjectStore for Counted {
        async fn put_opts(
            &self,
            l: &Path,
            p: PutPayload,
            o: PutOptions,
        ) -> object_store::Result<PutResult> {
            self.0.put_opts(l, p, o).await
        }
        async fn put_multipart_opts(
            &self,
            l: &Path,
            o: PutMultipartOptions,
        ) -> object_store::Result<Box<dyn MultipartUpload>> {
            self.0.put_multipart_opts(l, o).await
        }
        async fn get_opts(&self, l: &Path, o: GetOptions) -> object_store::Result<GetResult> {
            self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            self.0.get_opts(l, o).await
        }
        fn delete_stream(
            &self,
            l: BoxStream<'static, object_store::Result<Path>>,
        ) -> BoxStream<'static, object_store::Result<Path>> {
            self.0.delete_stream(l)
        }
        fn list(&self, p: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
            self.0.list(p)
        }
        async fn list_with_delimiter(&self, p: Option<&Path>) -> object_store::Result<ListResult> {
            self.0.list_with_delimiter(p).await
        }
        async fn copy_opts(&self, f: &Path, t: &Path, o: CopyOptions) -> object_store::Result<()> {
            self.0.copy_opts(f, t, o).await
        }
    }

    #[tokio::test]
    async fn small_ranges_of_data_files_are_read_once_and_everything_else_every_time() {
        let counted = Arc::new(Counted(InMemory::new(), Default::default()));
        let reads = || counted.1.load(std::sync::atomic::Ordering::Relaxed);
        let data = Path::from("logs/part-0.parquet");
        let log = Path::from("logs/_delta_log/_last_checkpoint");
        let content: Vec<u8> = (0..=255u8).cycle().take(3 << 20).collect();
        counted.put(&data, content.clone().into()).await.unwrap();
        counted
            .put(&log, b"{\"version\":1}".to_vec().into())
            .await
            .unwrap();
        let registry = CachingRegistry::new();
        let url = Url::parse("memory:///").unwrap();
        registry.register_store(&url, counted.clone());
        let store = registry.get_store(&url).unwrap();

        let before = reads();
        for _ in 0..3 {
            let got = store.get_range(&data, 100..5000).await.unwrap();
            assert_eq!(&got[..], &content[100..5000]);
        }
        assert_eq!(
            reads() - before,
            1,
            "a small range of a data file is read once"
        );
        // Registering the table's store again (every statement does) keeps what was read.
        registry.register_store(&url, counted.clone());
        let store = registry.get_store(&url).unwrap();
        assert_eq!(
            &store.get_range(&data, 100..5000).await.unwrap()[..],
            &content[100..5000]
        );
        assert_eq!(reads() - before, 1);
        // A large range, a whole file and anything but a data file go to the store each time.
        let before = reads();
        for _ in 0..2 {
            store.get_range(&data, 0..(2 << 20)).await.unwrap();
            store.get(&data).await.unwrap().bytes().await.unwrap();
            store.get_range(&log, 0..5).await.unwrap();
        }
        assert_eq!(reads() - before, 6);
        assert_eq!(registry.kept_bytes(), 4900);
    }

    #[tokio::test]
    async fn the_local_file_system_is_read_through_the_cache_too() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("part-0.parquet");
        std::fs::write(&file, vec![7u8; 10_000]).unwrap();
        let registry = CachingRegistry::new();
        let url = Url::from_file_path(&file).unwrap();
        let store = registry.get_store(&url).unwrap();
        let path = Path::from_url_path(url.path()).unwrap();
        assert_eq!(
            &store.get_range(&path, 10..20).await.unwrap()[..],
            &[7u8; 10]
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            &store.get_range(&path, 10..20).await.unwrap()[..],
            &[7u8; 10],
            "the range read before is answered from the cache"
        );
        assert_eq!(registry.kept_bytes(), 10);
    }

    #[test]
    fn the_least_recently_used_ranges_go_first_beyond_the_budget() {
        let mut kept = Kept::default();
        let meta = ObjectMeta {
            location: Path::from("a.parquet"),
            last_modified: Default::default(),
            size: 0,
            e_tag: None,
            version: None,
        };
        let key = |i: u64| -> Key { ("memory:///".into(), Path::from("a.parquet"), i..i + 1) };
        let chunk = Bytes::from(vec![0u8; BUDGET / 4]);
        for i in 0..4 {
            kept.put(key(i), chunk.clone(), meta.clone());
        }
        assert!(kept.get(&key(0)).is_some(), "range 0 used again");
        kept.put(key(4), chunk.clone(), meta.clone());
        assert!(kept.get(&key(1)).is_none(), "the least recently used went");
        assert!(kept.get(&key(0)).is_some() && kept.get(&key(4)).is_some());
        assert_eq!(kept.bytes, BUDGET);
    }
}
