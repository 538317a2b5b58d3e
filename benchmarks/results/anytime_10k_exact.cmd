python benchmarks/anytime.py --problems 10k --budgets 0.2,0.5,1,2,5,10,30,60 --methods auto,cpsat,milp-highs,best-fit,fgd,fgd-plus --repeats 3 --out benchmarks/results/anytime_10k_exact.md
