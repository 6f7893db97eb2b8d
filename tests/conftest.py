pytest_plugins = ["registry_fixtures"]
