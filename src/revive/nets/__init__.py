"""Pure nn.Modules, one file per network family; no Lightning, no losses."""
