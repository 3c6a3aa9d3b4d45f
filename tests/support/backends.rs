//! `both_backends!`: one `#[tokio::test]` per backend from each listed
//! `async fn(sessiond::testing::TestBackend)`, as `postgres::<name>` and `sqlite::<name>`.
//! Shared by the test crates on the store (`store_conformance`, `group_commit`, `flows`).

macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(sessiond::testing::TestBackend::Postgres).await;
                }
            )*
        }
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(sessiond::testing::TestBackend::Sqlite).await;
                }
            )*
        }
    };
}
