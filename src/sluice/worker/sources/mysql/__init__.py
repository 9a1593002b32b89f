"""The MySQL / MariaDB source: a consistent parallel snapshot, then the row-based binlog as neutral events."""
