"""The live ceremony: the coordinator daemon (`serve`, `daemon`), what consoles' commands mean
(`commands`), its config files (`config`) and a staged ceremony for trying it (`stage`)."""
