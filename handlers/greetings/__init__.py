"""Holiday and birthday greetings (节日问候, 生日祝福) and their calendar."""
