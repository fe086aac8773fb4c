# main.py: runs at boot. A bad config.json stops here with its errors printed and the REPL free.
import asyncio

import app

node = app.make()
if node is not None:
    asyncio.run(node.main())
