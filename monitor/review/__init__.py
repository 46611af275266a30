"""An analyst's answer to an alert (contract §3 `monitor review`): confirm or dismiss, and its effects."""
