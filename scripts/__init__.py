"""Entry points: the shell commands (train.sh, demo.sh, overfit.sh, test.sh, the set-up scripts,
caffe-env, plot_log) and the Python tools beside them. The training driver (train.py over
training_run.py), the multi-GPU worker, the loss plot, the VGG-19 converter, the label pictures,
the reference losses, the training crops and the data-layer benchmarks run inside
scripts/caffe-env and import the packages from the repository; demo.py and overfit.py (with
steps.py and recipe.py; demo_report.py renders the demo's report.md from its facts.json) run
with the deploy venv's Python and start each step where it needs to run.
"""
