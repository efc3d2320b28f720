"""notes subsystem: a Markdown notes vault (Obsidian, Logseq) as a graph document.

``parse`` (sans-IO: a note's text to its title, aliases, tags and links), ``vault`` (the blocking
shell: walks the folder, reads files within the vault under size and encoding rules) and
``build`` (pure: notes to a docs/protocol.md section 7 document). See docs/notes.md.
"""
