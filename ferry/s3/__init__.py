"""S3: listing, comparing, copying, verifying and live-syncing buckets."""
