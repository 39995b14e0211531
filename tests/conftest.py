pytest_plugins = ["tests.conftest_services", "tests.job_ports", "tests.processes"]
