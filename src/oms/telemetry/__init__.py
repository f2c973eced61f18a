"""What a service tells about itself: logs (``logs``), request metrics (``http_metrics``), and traces
(``tracing`` sets them up; ``spans`` makes one order's spans; ``otlp`` writes them as OTLP)."""
