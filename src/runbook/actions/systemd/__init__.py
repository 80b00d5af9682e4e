"""systemd units (Attune's executor and workers): status and gated restarts through systemctl."""
