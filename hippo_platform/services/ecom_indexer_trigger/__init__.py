"""ecom_indexer_trigger stand-in: a documents file in S3 becomes batches on the queue."""
