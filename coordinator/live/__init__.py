"""The live ceremony: the coordinator daemon (`serve`, `daemon`), what consoles' commands mean
(`translate`), its config files (`config`) and a staged ceremony for trying it (`stage`);
`keyrite coordinator` and `keyrite stage` are `coordinator_command` and `stage_command`."""
