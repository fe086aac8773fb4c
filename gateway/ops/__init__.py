"""Operations: systemd notify and watchdog, structured logs, metrics, install and status."""
