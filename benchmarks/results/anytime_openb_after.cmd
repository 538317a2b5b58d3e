python benchmarks/anytime.py --problems default,multigpu50 --budgets 1,2,5,10 --methods auto,fgd,fgd-plus,first-fit --repeats 3 --out benchmarks/results/anytime_openb_after.md
