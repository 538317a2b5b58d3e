python benchmarks/anytime.py --problems 10k --budgets 5,10,30,60 --methods auto,best-fit,fgd,fgd-plus --repeats 3 --out benchmarks/results/anytime_10k_after.md
