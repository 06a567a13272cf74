"""The dataset rules that decide what a sample is: the language and repetition filter, token
counting with the target tokenizer, and the token-budget split."""
