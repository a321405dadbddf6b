//! The S3 backend against a real S3 server (moto_server, started by `scripts/test`), through
//! the driver suite and what only S3 has: parts, tails, copies, presigned URLs, abandoned
//! uploads.

#[cfg(feature = "s3")]
mod s3 {
    use std::io::{Read, Write};
    use std::time::{Duration, SystemTime};

    use bytes::Bytes;
    use wharf_storage::{
        RedirectMethod, S3Config, S3Driver, StorageConfig, StorageDriver, StorageDriverExt, testsuite,
    };

    const MIB: usize = 1 << 20;

    /// A configuration for the test server with a root of the test's own, its bucket created,
    /// or `None` (after saying so) when no server is configured. Under
    /// `WHARF_REQUIRE_PEERS=1` a missing server fails the test instead.
    async fn config(test: &str) -> Option<S3Config> {
        let mut config = wharf_testing::peers::s3_config(test)?;
        // Small parts, so that the suite's sizes cross part boundaries many times.
        config.chunk_size = 5 << 20;
        wharf_testing::peers::s3_driver(config.clone()).await;
        Some(config)
    }

    async fn driver(test: &str) -> Option<S3Driver> {
        Some(S3Driver::new(config(test).await?).await.unwrap())
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn passes_the_suite() {
        let Some(driver) = driver("suite").await else {
            return;
        };
        testsuite::run_all(&driver).await;
        assert!(driver.abandoned_uploads(SystemTime::now() + Duration::from_secs(3600)).await.unwrap().is_empty());
    }

    /// A key with an empty segment, written by another tool, is passed over by listings and
    /// walks instead of breaking them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn keys_with_empty_segments_are_passed_over() {
        let Some(config) = config("empty-segments").await else {
            return;
        };
        let driver = S3Driver::new(config.clone()).await.unwrap();
        driver.put_content("/dir/file", Bytes::from_static(b"kept")).await.unwrap();
        let odd = format!("{}/dir//x", config.root_directory.trim_matches('/'));
        driver
            .client()
            .put_object()
            .bucket(&config.bucket)
            .key(&odd)
            .body(Vec::from(&b"odd"[..]).into())
            .send()
            .await
            .unwrap();
        assert_eq!(driver.list("/dir").await.unwrap(), ["/dir/file"]);
        let walked: Vec<String> = futures::TryStreamExt::try_collect::<Vec<_>>(driver.walk("/dir", None))
            .await
            .unwrap()
            .into_iter()
            .map(|f| f.path)
            .collect();
        assert_eq!(walked, ["/dir/file"]);
        driver.delete("/dir").await.unwrap();
        let _ = driver.client().delete_object().bucket(&config.bucket).key(&odd).send().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resumes_after_restart_from_config() {
        let Some(s3) = config("restart").await else {
            return;
        };
        let config = StorageConfig::S3(s3);
        let data = testsuite::test_data(1, 9 * MIB);
        let path = "/docker/registry/v2/repositories/app/_uploads/u1/data";
        {
            let driver = config.build().await.unwrap();
            let mut writer = driver.writer(path, false).await.unwrap();
            writer.write(data.slice(..7 * MIB)).await.unwrap();
            writer.close().await.unwrap();
        }
        let driver = config.build().await.unwrap();
        let mut writer = driver.writer(path, true).await.unwrap();
        assert_eq!(writer.size(), 7 * MIB as u64);
        writer.write(data.slice(7 * MIB..)).await.unwrap();
        writer.commit().await.unwrap();
        assert_eq!(driver.read_all(path, 0).await.unwrap(), data);
        driver.delete("/docker").await.unwrap();
    }

    /// A writer that uploaded a part and then died before saving its tail: the resumed size
    /// covers what the part holds, and the content is right.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn resumes_after_a_close_cut_short() {
        let Some(driver) = driver("cut-short").await else {
            return;
        };
        let data = testsuite::test_data(2, 12 * MIB);
        let path = "/upload/data";
        let mut writer = driver.writer(path, false).await.unwrap();
        writer.write(data.slice(..3 * MIB)).await.unwrap();
        writer.close().await.unwrap(); // tail: 3 MiB at offset 0
        let mut writer = driver.writer(path, true).await.unwrap();
        writer.write(data.slice(3 * MIB..6 * MIB)).await.unwrap(); // uploads part 1 (5 MiB)
        drop(writer); // the process dies: the tail object still says offset 0
        let mut writer = driver.writer(path, true).await.unwrap();
        assert_eq!(writer.size(), 5 * MIB as u64);
        writer.write(data.slice(5 * MIB..)).await.unwrap();
        writer.commit().await.unwrap();
        assert_eq!(driver.read_all(path, 0).await.unwrap(), data);
        driver.delete("/upload").await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn renames_large_files_with_parallel_part_copies() {
        let Some(mut config) = config("copy").await else {
            return;
        };
        config.multipart_copy_threshold_size = 5 * MIB as u64;
        config.multipart_copy_chunk_size = 5 * MIB as u64;
        config.multipart_copy_max_concurrency = 3;
        let driver = S3Driver::new(config).await.unwrap();
        let data = testsuite::test_data(3, 13 * MIB + 17);
        driver.put_content("/big", data.clone()).await.unwrap();
        driver.rename("/big", "/moved/big").await.unwrap();
        assert_eq!(driver.get_content("/moved/big").await.unwrap(), data);
        assert!(driver.get_content("/big").await.unwrap_err().is_not_found());
        driver.delete("/moved").await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn presigned_urls_fetch_the_content() {
        let Some(driver) = driver("presign").await else {
            return;
        };
        driver.put_content("/blob", Bytes::from_static(b"presigned content")).await.unwrap();
        let url = driver.redirect_url("/blob", RedirectMethod::Get).await.unwrap().expect("S3 presigns");
        assert!(url.query().unwrap_or_default().contains("X-Amz-Signature"), "{url}");
        let (status, body) = http_get(&url);
        assert_eq!(status, 200, "{url}");
        assert!(body.ends_with(b"presigned content"));
        let head = driver.redirect_url("/blob", RedirectMethod::Head).await.unwrap().unwrap();
        assert_ne!(head, url);
        driver.delete("/blob").await.unwrap();
    }

    /// A bare HTTP/1.1 GET, enough to follow a presigned URL to the local test server.
    fn http_get(url: &url::Url) -> (u16, Vec<u8>) {
        let address = format!("{}:{}", url.host_str().unwrap(), url.port_or_known_default().unwrap());
        let mut stream = std::net::TcpStream::connect(address).unwrap();
        let target = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        let host = url.host_str().unwrap();
        let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
        write!(stream, "GET {target} HTTP/1.1\r\nHost: {host}{port}\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = Vec::new();
        stream.read_to_end(&mut response).unwrap();
        let status = String::from_utf8_lossy(&response[9..12]).parse().unwrap();
        (status, response)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn abandoned_uploads_are_listed_and_aborted() {
        let Some(driver) = driver("abandoned").await else {
            return;
        };
        let mut writer = driver.writer("/uploads/left/data", false).await.unwrap();
        writer.write(testsuite::test_data(4, 6 * MIB)).await.unwrap();
        writer.close().await.unwrap();
        // moto reports a fixed start time (2010) for every upload, so only the direction of
        // the cut-off is checked here: nothing was started before 1970.
        assert!(driver.abandoned_uploads(SystemTime::UNIX_EPOCH).await.unwrap().is_empty());
        let abandoned = driver.abandoned_uploads(SystemTime::now() + Duration::from_secs(60)).await.unwrap();
        assert_eq!(abandoned.len(), 1, "{abandoned:?}");
        assert_eq!(abandoned[0].path, "/uploads/left/data");
        driver.abort_upload(&abandoned[0]).await.unwrap();
        assert!(driver.writer("/uploads/left/data", true).await.unwrap_err().is_not_found());
        assert!(driver.abandoned_uploads(SystemTime::now() + Duration::from_secs(60)).await.unwrap().is_empty());
    }

    /// Refuses the requests whose method and URI `refuse` picks, as a bucket policy or a
    /// failing network might.
    #[derive(Debug)]
    struct Refuse(fn(&str, &str) -> bool);

    impl aws_sdk_s3::config::Intercept for Refuse {
        fn name(&self) -> &'static str {
            "Refuse"
        }

        fn read_before_transmit(
            &self,
            context: &aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef<'_>,
            _components: &aws_sdk_s3::config::RuntimeComponents,
            _cfg: &mut aws_sdk_s3::config::ConfigBag,
        ) -> Result<(), aws_sdk_s3::error::BoxError> {
            let request = context.request();
            if (self.0)(request.method(), request.uri()) {
                return Err(format!("refused {} {}", request.method(), request.uri()).into());
            }
            Ok(())
        }
    }

    /// Once CompleteMultipartUpload has published the content, a failure to delete the tail
    /// does not make the commit an error; the tail left behind does not stop the path being
    /// written or deleted later.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_whose_tail_cannot_be_deleted_succeeds() {
        let Some(driver) = driver("tail-left").await else {
            return;
        };
        let refusing = driver.with_interceptor(Refuse(|method, uri| method == "DELETE" && uri.contains("staging")));
        let data = testsuite::test_data(5, 7 * MIB);
        let path = "/upload/data";
        let mut writer = refusing.writer(path, false).await.unwrap();
        writer.write(data.slice(..6 * MIB)).await.unwrap();
        writer.close().await.unwrap();
        let mut writer = refusing.writer(path, true).await.unwrap();
        writer.write(data.slice(6 * MIB..)).await.unwrap();
        writer.commit().await.expect("the content was published");
        assert_eq!(driver.read_all(path, 0).await.unwrap(), data);
        // The tail is still there: a new write of the path clears it.
        let mut writer = driver.writer(path, false).await.unwrap();
        assert_eq!(writer.size(), 0);
        writer.write(Bytes::from_static(b"again")).await.unwrap();
        writer.commit().await.unwrap();
        assert_eq!(driver.read_all(path, 0).await.unwrap(), &b"again"[..]);
        driver.delete("/upload").await.unwrap();
        assert!(driver.delete("/upload").await.unwrap_err().is_not_found());
    }

    /// Deleting a folder of more keys than one listing page holds takes them all, and spares
    /// its siblings whose names start with its own, however many of them sort before it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn deletes_page_by_page_and_spares_siblings() {
        let Some(driver) = driver("delete-pages").await else {
            return;
        };
        let put = |path: String| {
            let driver = driver.clone();
            async move { driver.put_content(&path, Bytes::from(path.clone())).await.unwrap() }
        };
        let below: Vec<String> = (0..1100).map(|i| format!("/d/x/{i:04}")).collect();
        // "x-…" sorts before "x/": a thousand of them fill the first page of names.
        let siblings: Vec<String> = (0..1050).map(|i| format!("/d/x-{i:04}")).chain(["/d/xy/z".to_owned()]).collect();
        futures::StreamExt::collect::<Vec<()>>(futures::StreamExt::buffer_unordered(
            futures::stream::iter(below.iter().chain(&siblings).cloned().map(put)),
            32,
        ))
        .await;
        driver.put_content("/d/x", Bytes::from_static(b"the file beside its folder")).await.unwrap();
        driver.delete("/d/x").await.unwrap();
        assert!(driver.stat("/d/x").await.unwrap_err().is_not_found());
        assert!(driver.stat(&below[1099]).await.unwrap_err().is_not_found());
        let left = driver.list("/d").await.unwrap();
        assert_eq!(left.len(), siblings.len(), "siblings kept");
        assert!(driver.delete("/d/x").await.unwrap_err().is_not_found());
        driver.delete("/d").await.unwrap();
    }

    /// Bulk moves copy and then delete their sources a thousand at a time; bulk deletes of
    /// files take a thousand a request. Missing files are told apart and are no error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_moves_and_deletes() {
        let Some(driver) = driver("bulk").await else {
            return;
        };
        let names: Vec<String> = (0..1200).map(|i| format!("/from/{i:04}")).collect();
        futures::StreamExt::collect::<Vec<()>>(futures::StreamExt::buffer_unordered(
            futures::stream::iter(names.iter().filter(|n| !n.ends_with('7')).cloned().map(|path| {
                let driver = driver.clone();
                async move { driver.put_content(&path, Bytes::from(path.clone())).await.unwrap() }
            })),
            32,
        ))
        .await;
        let moves = names.iter().map(|n| (n.clone(), n.replace("/from/", "/to/"))).collect();
        let moved = driver.rename_many(moves).await.unwrap();
        for (name, moved) in names.iter().zip(&moved) {
            assert_eq!(*moved, !name.ends_with('7'), "{name}");
        }
        assert!(driver.stat("/from").await.unwrap_err().is_not_found(), "every source deleted");
        assert!(driver.stat("/to/0007").await.unwrap_err().is_not_found());
        assert_eq!(driver.get_content("/to/1199").await.unwrap(), &b"/from/1199"[..]);
        driver.delete_files(names.iter().map(|n| n.replace("/from/", "/to/")).collect()).await.unwrap();
        assert!(driver.stat("/to").await.unwrap_err().is_not_found());
    }

    #[tokio::test]
    async fn bad_endpoint_is_a_config_error() {
        let mut config = S3Config::new("bucket", "us-east-1");
        config.region_endpoint = Some("http://[::1".into());
        let err = S3Driver::new(config).await.unwrap_err();
        assert!(err.to_string().contains("storage.s3.regionendpoint"), "{err}");
    }
}
