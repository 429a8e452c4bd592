"""Alert sending: the lab's Lambda destination (``handler``), the local default servers (``local``),
the Lambda zip (``package``), invoking it on a stream (``destination``) and what happened (``report``)."""
