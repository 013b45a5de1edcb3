"""Ferry: move live DynamoDB tables and S3 buckets without stopping the service, and prove nothing was lost."""

__version__ = "0.1.0"
