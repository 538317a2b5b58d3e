python benchmarks/anytime.py --problems 20k --budgets 0.2,0.5,1,2,5,10,30 --methods auto,cpsat,milp-highs,best-fit,fgd,fgd-plus --repeats 1 --out benchmarks/results/anytime_20k.md
