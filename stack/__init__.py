"""The production stack on one machine: real S3 (SeaweedFS), PostgreSQL, a Ray head reached by
address and a Spark standalone cluster, all on 127.0.0.1, started and stopped by the tests and by
`python -m stack` (`make stack`). Only Kubernetes itself is absent."""
