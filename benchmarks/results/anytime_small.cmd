python benchmarks/anytime.py --problems 10k,20k --budgets 0.2,0.5 --methods auto,cpsat,milp-highs,best-fit,fgd,fgd-plus --repeats 3 --out benchmarks/results/anytime_small.md
