.PHONY: setup demo test bench
setup:  ## create .venv with posterdb and all extras (idempotent)
	bash scripts/setup.sh
demo:   ## the main job: ingest ../shared/posters, train, open the page on 127.0.0.1:8501
	bash scripts/demo.sh
test:   ## set up and run the whole test suite
	bash scripts/test.sh
bench:  ## benchmarks (not part of the tests)
	bash scripts/setup.sh && .venv/bin/python -m bench
