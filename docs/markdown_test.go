package docs

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// block is one fenced code block of a page: its language, the key=value (or bare key)
// words after it, its text and the line of its opening fence.
type block struct {
	page  string
	line  int
	lang  string
	attrs map[string]string
	text  string
}

func (b block) String() string { return fmt.Sprintf("%s:%d", b.page, b.line) }

// fencedBlocks reads the top-level fenced blocks (``` at the start of a line) of a page.
// Indented blocks, such as those inside list items, are left alone: they are never run.
func fencedBlocks(path string) ([]block, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var (
		blocks []block
		cur    *block
		text   strings.Builder
		n      int
	)
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		n++
		line := sc.Text()
		switch {
		case cur == nil && strings.HasPrefix(line, "```"):
			fields := strings.Fields(strings.TrimPrefix(line, "```"))
			cur = &block{page: filepath.ToSlash(path), line: n, attrs: map[string]string{}}
			if len(fields) > 0 {
				cur.lang = fields[0]
				for _, f := range fields[1:] {
					k, v, _ := strings.Cut(f, "=")
					cur.attrs[k] = v
				}
			}
			text.Reset()
		case cur != nil && strings.TrimSpace(line) == "```":
			cur.text = text.String()
			blocks = append(blocks, *cur)
			cur = nil
		case cur != nil:
			text.WriteString(line)
			text.WriteByte('\n')
		}
	}
	if cur != nil {
		return nil, fmt.Errorf("%s:%d: code block never closed", path, cur.line)
	}
	return blocks, sc.Err()
}

// pages are the Markdown files whose examples run: the README and every docs page.
func pages() ([]string, error) {
	docs, err := filepath.Glob("*.md")
	if err != nil {
		return nil, err
	}
	return append([]string{"../README.md"}, docs...), nil
}
