/*-------------------------------------------------------------------------
 *
 * zipread.c
 *	  Reading the lines of the one file a zip archive in memory holds, a
 *	  chunk at a time.
 *
 * The archive stays compressed in memory and is inflated as the lines are
 * taken, through a buffer of fixed size: a file of any length costs its
 * compressed bytes plus READ_CHUNK, never its inflated size.  libzip does
 * the format (stored and deflated members, data descriptors, zip64) and
 * checks each member's CRC when it reaches its end.
 *
 * libzip allocates with malloc, so its handles are tied to the memory
 * context the reader was opened in: a reset callback closes them, and an
 * error that unwinds past the reader leaks nothing.  Nothing here raises;
 * failures are returned with a message.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <zip.h>

#include "utils/memutils.h"

#include "zipread.h"

/* inflated bytes read at once */
#define READ_CHUNK (256 * 1024)
/* CSV deflates about tenfold; a file that inflates far more is a bomb */
#define MAX_RATIO 200

struct MdZipReader
{
	zip_t	   *za;
	zip_file_t *zf;
	char	   *buf;			/* READ_CHUNK + MD_ZIP_MAX_LINE bytes */
	size_t		start;			/* the unread bytes are buf[start, end) */
	size_t		end;
	bool		eof;
	int64		bytes;			/* inflated bytes so far */
	int64		max_bytes;		/* more is a zip bomb */
	MemoryContextCallback on_reset;
};

/*
 * md_zip_close releases libzip's handles and the buffer; safe to call
 * twice, and from the reset callback (the context then frees the buffer).
 */
void
md_zip_close(MdZipReader *z)
{
	if (z->zf != NULL)
		zip_fclose(z->zf);
	if (z->za != NULL)
		zip_discard(z->za);
	z->zf = NULL;
	z->za = NULL;
	/* the buffer is most of a reader: a job reads many files in one context */
	if (z->buf != NULL)
		pfree(z->buf);
	z->buf = NULL;
}

static void
zip_reset_cb(void *arg)
{
	md_zip_close((MdZipReader *) arg);
}

/*
 * md_zip_open opens the one file in a zip archive of len bytes at data,
 * which must stay valid until the reader is closed.  Returns NULL, with
 * *err, if the bytes are no zip or it holds no file or several.
 */
MdZipReader *
md_zip_open(const char *data, size_t len, char **err)
{
	MdZipReader *z;
	zip_error_t zerr;
	zip_source_t *src;
	zip_int64_t n;

	zip_error_init(&zerr);
	src = zip_source_buffer_create(data, len, 0, &zerr);
	if (src == NULL)
	{
		*err = psprintf("could not read the zip: %s", zip_error_strerror(&zerr));
		zip_error_fini(&zerr);
		return NULL;
	}

	z = palloc0(sizeof(MdZipReader));
	z->on_reset.func = zip_reset_cb;
	z->on_reset.arg = z;
	MemoryContextRegisterResetCallback(CurrentMemoryContext, &z->on_reset);

	z->za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &zerr);
	if (z->za == NULL)
	{
		zip_source_free(src);
		*err = psprintf("not a zip archive: %s", zip_error_strerror(&zerr));
		zip_error_fini(&zerr);
		return NULL;
	}
	zip_error_fini(&zerr);
	n = zip_get_num_entries(z->za, 0);
	if (n != 1)
	{
		*err = psprintf("the zip holds %lld files, not one", (long long) n);
		md_zip_close(z);
		return NULL;
	}
	z->zf = zip_fopen_index(z->za, 0, 0);
	if (z->zf == NULL)
	{
		*err = psprintf("could not open the file in the zip: %s", zip_strerror(z->za));
		md_zip_close(z);
		return NULL;
	}
	z->buf = palloc(READ_CHUNK + MD_ZIP_MAX_LINE);
	z->max_bytes = (int64) len * MAX_RATIO + 1024 * 1024;
	return z;
}

/*
 * fill moves what is unread to the front of the buffer and reads the next
 * chunk behind it.  Returns false, with *err, on a read error.
 */
static bool
fill(MdZipReader *z, char **err)
{
	zip_int64_t got;

	if (z->start > 0)
	{
		memmove(z->buf, z->buf + z->start, z->end - z->start);
		z->end -= z->start;
		z->start = 0;
	}
	got = zip_fread(z->zf, z->buf + z->end, READ_CHUNK + MD_ZIP_MAX_LINE - z->end);
	if (got < 0)
	{
		zip_error_t *ze = zip_file_get_error(z->zf);

		*err = psprintf("the zip's file is damaged: %s", zip_error_strerror(ze));
		return false;
	}
	if (got == 0)
		z->eof = true;
	z->end += (size_t) got;
	z->bytes += got;
	if (z->bytes > z->max_bytes)
	{
		*err = psprintf("the file inflates to more than %d times its size", MAX_RATIO);
		return false;
	}
	return true;
}

/*
 * md_zip_next_line gives the next line (without its newline; the memory is
 * the reader's, valid until the next call).  Returns MD_ZIP_LINE, MD_ZIP_END
 * at the end of the file, or MD_ZIP_ERROR with *err: a read error, or a
 * line longer than MD_ZIP_MAX_LINE.
 */
MdZipResult
md_zip_next_line(MdZipReader *z, const char **line, size_t *len, char **err)
{
	for (;;)
	{
		char	   *p = z->buf + z->start;
		char	   *nl = memchr(p, '\n', z->end - z->start);

		if (nl != NULL && nl - p > MD_ZIP_MAX_LINE)
		{
			*err = psprintf("the file has a line longer than %d bytes", MD_ZIP_MAX_LINE);
			return MD_ZIP_ERROR;
		}
		if (nl != NULL)
		{
			*line = p;
			*len = nl - p;
			z->start += *len + 1;
			return MD_ZIP_LINE;
		}
		if (z->eof)
		{
			if (z->end == z->start)
				return MD_ZIP_END;
			/* a last line without its newline */
			*line = p;
			*len = z->end - z->start;
			z->start = z->end;
			return MD_ZIP_LINE;
		}
		if (z->end - z->start >= MD_ZIP_MAX_LINE)
		{
			*err = psprintf("the file has a line longer than %d bytes", MD_ZIP_MAX_LINE);
			return MD_ZIP_ERROR;
		}
		if (!fill(z, err))
			return MD_ZIP_ERROR;
	}
}

/*
 * md_zip_bytes is how many inflated bytes the reader has read so far.
 */
int64
md_zip_bytes(const MdZipReader *z)
{
	return z->bytes;
}
