"""event_pipe: the local stand-in for the EventBridge Pipes that moto only stores.

In AWS a pipe reads each table's DynamoDB stream and puts every change on an event
bus, and a rule forwards it to the exporters. moto keeps pipe definitions but never
moves a record, so on the local cell this service does the moving: it follows both
tables' streams, puts each change on its bus (as the pipe would) and posts it to the
daemon's webhook (as the rule's API destination would), which routes it to the
exporter. A settings change thus reaches S3 with no AWS account.
"""
